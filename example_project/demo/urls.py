from django.urls import path

from demo import views

urlpatterns = [
    path("", views.index, name="index"),
    path("add/", views.add, name="add"),
    path("reset/", views.reset, name="reset"),
]
